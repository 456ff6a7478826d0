import sys

from hybridformer.cli import main

sys.exit(main())
