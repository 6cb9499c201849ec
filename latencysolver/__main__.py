import sys

from latencysolver.cli import main

sys.exit(main())
