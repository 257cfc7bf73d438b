"""`python -m rlkit.submit <rlkit.run -m args>`: submit a sweep and return at once (rlkit/launch/submit.py)."""
import sys

from rlkit.launch.submit import main

if __name__ == "__main__":
    sys.exit(main())
