"""docs/config.md names every key watcher/config/ accepts, and no key it does not accept.

The accepted keys are read from config/load.py and config/rulefile.py themselves: their key tables (TOP_KEYS,
RULE_KEYS, and each backend's OPTIONS) and every literal key list their readers pass to `section(...)` and
`unknown_keys(...)` (found with `ast`, so a key added to a reader shows up here without
anyone updating this test). The documented keys are the first cells of docs/config.md's
tables: `prometheus.url` under "watcher.yaml", `backend.releases` under "backend type
`symlink`", `name` under "Rule files".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from watcher.backends import BACKENDS
from watcher.config import load as config
from watcher.config import rulefile

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "config.md"
ROW = re.compile(r"^\| `([^`]+)` \|", re.M)

# Readers whose key prefix is built at run time ("notify[3].") and how the reference names it.
DYNAMIC_PREFIX = {"_read_notify": "notify[]."}


def _literal_keys(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.List) and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]
    for module in (config, rulefile):
        if isinstance(node, ast.Name) and isinstance(getattr(module, node.id, None), list):
            return list(getattr(module, node.id))
    return None


def accepted_keys() -> dict[str, set[str]]:
    """{"watcher.yaml": {...}, "rules": {...}, "backend symlink": {...}, ...} from config/."""
    found: dict[str, set[str]] = {"watcher.yaml": set(config.TOP_KEYS), "rules": set(rulefile.RULE_KEYS) | {"rules"}}
    found["watcher.yaml"].add("backend.type")
    for kind, backend in BACKENDS.items():
        table = backend.OPTIONS
        found[f"backend {kind}"] = {f"backend.{key}" for key in table}
    trees = [ast.parse(Path(m.__file__).read_text()) for m in (config, rulefile)]
    for func in (n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
            name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
            if name == "section" and len(call.args) >= 4:
                section = call.args[1].value
                keys = _literal_keys(call.args[3])
                assert keys is not None, f"{func.name}: section({section!r}) keys are not a literal list"
                found["watcher.yaml"] |= {f"{section}.{k}" for k in keys}
            elif name == "unknown_keys" and len(call.args) >= 3 and isinstance(call.args[1], ast.List):
                keys = _literal_keys(call.args[1])
                prefix = call.args[2]
                if keys is None:
                    continue  # ["type", *table]: a backend's OPTIONS, taken above (TOP_KEYS, RULE_KEYS are names)
                if isinstance(prefix, ast.Constant):
                    target = "rules" if func.name == "load_rules" else "watcher.yaml"
                    found[target] |= {f"{prefix.value}{k}" for k in keys}
                else:
                    assert func.name in DYNAMIC_PREFIX, f"{func.name}: a key prefix this test cannot name; add it"
                    found["watcher.yaml"] |= {f"{DYNAMIC_PREFIX[func.name]}{k}" for k in keys}
    return found


def documented_keys() -> dict[str, set[str]]:
    text = DOC.read_text()
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    sections: dict[str, set[str]] = {}
    heading = ""
    for part in parts:
        if part.startswith("#"):
            heading = part
            continue
        if heading.startswith("## watcher.yaml") or heading.startswith("## backend"):
            key = "watcher.yaml"
        elif m := re.match(r"### backend type `([a-z-]+)`", heading):
            key = f"backend {m.group(1)}"
        elif heading.startswith("## Rule files"):
            key = "rules"
        else:
            continue
        sections.setdefault(key, set()).update(ROW.findall(part))
    return sections


def test_every_key_config_py_accepts_is_in_docs_config_md():
    accepted, documented = accepted_keys(), documented_keys()
    missing = {section: sorted(keys - documented.get(section, set())) for section, keys in accepted.items()}
    assert {s: k for s, k in missing.items() if k} == {}, "keys accepted by watcher/config/ missing in docs/config.md"


def test_docs_config_md_names_no_key_config_py_refuses():
    accepted, documented = accepted_keys(), documented_keys()
    extra = {section: sorted(keys - accepted.get(section, set())) for section, keys in documented.items()}
    assert {s: k for s, k in extra.items() if k} == {}, "keys in docs/config.md that watcher/config/ does not accept"


def test_the_reference_documents_verify_successes_and_expect_body():
    documented = documented_keys()["watcher.yaml"]
    assert {"verify.successes", "verify.expect_body", "prometheus.url", "notify[].min_severity"} <= documented
