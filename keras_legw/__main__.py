import sys

from keras_legw.cli import main

sys.exit(main())
