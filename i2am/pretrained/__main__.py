"""``python -m i2am.pretrained [NAME]``: the path of a shipped toy checkpoint, or the list of names."""
import sys

from i2am.pretrained import toy_checkpoint, toy_names

if __name__ == "__main__":
    print(toy_checkpoint(sys.argv[1]) if len(sys.argv) > 1 else "\n".join(toy_names()))
