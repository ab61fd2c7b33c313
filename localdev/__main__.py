"""Local development entry point.

python -m localdev run      the local stack and the app on http://127.0.0.1:7071
python -m localdev token    a bearer token from the local issuer (make token)
python -m localdev.stack    the stand-ins alone (up / down / status)
python -m localdev.host     the local Functions host alone
"""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "token"}:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "token":
        from localdev.tokens import main as token_main

        return token_main(sys.argv[2:])
    from localdev.run import main as run_main

    return run_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
