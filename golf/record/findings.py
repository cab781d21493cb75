"""What `golf pack --check` reports, in three grades.

- error: the folder breaks a rule or a claim it makes is not backed by its own files (over the
  cap, over the clocks on the record track, a score no log shows, a missing or empty required
  file, no author). Any error fails the check (exit 1).
- warning: real, but not disqualifying by the rules as practised (the code fits only as its
  compressed wrapper, the logs were made by a slightly different file, fewer than 3 seeds, the
  headline is one seed's score without saying so). Reported; the check still passes.
- note: a convention the checker accepted, said so the reader can see what was assumed (which
  seed a headline is, a duplicate copy of a log counted once).

golf's own records are held to more: what golf writes must match exactly, so for a folder whose
submission.json has golf's schema the checks that are warnings for other folders are errors.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Findings:
    strict: bool = False  # golf's own record: exactness is guaranteed, so a mismatch is an error
    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def mismatch(self, message: str) -> None:
        """A number that disagrees with the files: an error for golf's records, else a warning."""
        (self.errors if self.strict else self.warnings).append(message)
