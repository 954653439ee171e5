"""``python -m streammoe`` runs the command line (same as the ``streammoe`` script)."""
from .cli import main

if __name__ == "__main__":
    main()
