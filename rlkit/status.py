"""`python -m rlkit.status <sweep dir | sweep id | sweep name>`: each job's state (rlkit/launch/status.py)."""
import sys

from rlkit.launch.status import main

if __name__ == "__main__":
    sys.exit(main())
