"""``hybridformer generate``: text from an image (and optionally a clip) and a prompt.

The prompt goes into the model folder's chat template and decoding follows its
``generation_config.json`` (greedy for our captioning models) unless a flag says otherwise;
without ``--prompt`` the model captions the image.

    hybridformer generate --model runs/mm/model --image seven.png
    hybridformer generate --model tiny --image cat.png --prompt "a photo of"
    hybridformer generate --model runs/mm/model --image digit.png --prompt "what digit is this?" --strategy beam
    hybridformer generate --model tiny --image frame.png --video clip.npy --prompt "the digit moves" --max-new-tokens 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TINY_NOTICE = "note: --model tiny is randomly initialised: its output is meaningless (it shows the pipeline runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="tiny|DIR",
                        help="'tiny' (random weights) or a folder saved by MultimodalModel.save_pretrained")
    parser.add_argument("--image", required=True, type=Path, metavar="FILE", help="image file (PNG, JPEG, ...)")
    parser.add_argument("--video", type=Path, metavar="FILE", help="clip: .npy array, frame folder or video file")
    parser.add_argument("--prompt", default="", metavar="TEXT",
                        help="the user's text, put into the model's chat template (none: a caption)")
    parser.add_argument("--max-new-tokens", type=int, metavar="N",
                        help="most tokens generated (the folder's generation config, else 20)")
    parser.add_argument("--strategy", choices=("greedy", "sample", "beam"),
                        help="decoding strategy (the folder's generation config: greedy unless it samples)")
    parser.add_argument("--num-beams", type=int, metavar="K", help="beam search width (4)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (the folder's, else 1.0)")
    parser.add_argument("--top-k", type=int, metavar="K", help="sampling: keep the K likeliest (0 = off)")
    parser.add_argument("--top-p", type=float, metavar="P", help="sampling: nucleus mass (the folder's, else 1.0 = off)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny model's init and of sampling (0)")


def run(args: argparse.Namespace) -> int:
    from hybridformer.config import ConfigError
    from hybridformer.recipes.generate import GenerateRequest, generate_text

    if getattr(args, "overrides", None):
        print(f"hybridformer generate: error: unknown arguments {' '.join(args.overrides)}", file=sys.stderr)
        return 2
    flags = {"max_new_tokens": args.max_new_tokens, "strategy": args.strategy, "num_beams": args.num_beams,
             "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    try:
        request = GenerateRequest(model=args.model, image=args.image, video=args.video, prompt=args.prompt,
                                  seed=args.seed, generation={k: v for k, v in flags.items() if v is not None})
        result = generate_text(request)
    except ConfigError as err:  # a bad option value: name the flag
        field, _, message = str(err).partition(": ")
        print(f"hybridformer generate: error: --{field.replace('_', '-')}: {message}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        print(f"hybridformer generate: error: {err}", file=sys.stderr)
        return 2
    if result.random_model:
        print(TINY_NOTICE, file=sys.stderr)
    print(result.text)
    return 0
