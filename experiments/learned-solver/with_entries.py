"""Write every learned fives → sevens entry of bench/translate-quotient-learned/learned-entries.json into exported
copies of the two models, so one `ddib bench translate --grids both` run compares all step counts, learned and not.
    ddib export --domain fives --out DIR/fives; ddib export --domain sevens --out DIR/sevens
    python experiments/learned-solver/with_entries.py DIR
"""

import json
import sys
from pathlib import Path

BRIDGE = "fives → sevens"
ENTRIES = Path(__file__).resolve().parents[2] / "bench" / "translate-quotient-learned" / "learned-entries.json"


def main():
    models = Path(sys.argv[1])
    entries = json.loads(ENTRIES.read_text())
    for domain in ("fives", "sevens"):
        path = models / domain / "config.json"
        config = json.loads(path.read_text())
        grids = config.setdefault("solver_grids", {})
        for name, entry in entries.items():
            key, bridge = name.split(" ", 1)
            if bridge == BRIDGE:
                grids[key] = entry[domain]
        path.write_text(json.dumps(config, indent=2) + "\n")
        print(domain, sorted(grids, key=lambda k: int(k.split(":")[1])))


if __name__ == "__main__":
    main()
