"""Rewrite README.md's worker settings table from WorkerSettings (run after adding one)."""

from pathlib import Path

from worker.settings import WorkerSettings

README = Path(__file__).resolve().parents[1] / "README.md"
rows = ["| variable | default | what |", "| --- | --- | --- |"]
for name, f in WorkerSettings.model_fields.items():
    d = f.default if f.default_factory is None else f.default_factory()
    shown = "unset" if d is None else f"`{d}`"
    rows.append(f"| `ORCHESTRATOR_{name.upper()}` | {shown} | {f.description} |")
text = README.read_text()
start = text.index("| variable | default | what |", text.index("### Worker settings"))
end = text.index("\n\n", start)
README.write_text(text[:start] + "\n".join(rows) + text[end:])
