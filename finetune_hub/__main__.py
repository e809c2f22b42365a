import sys

from finetune_hub.cli import main

sys.exit(main())
