"""Record folders: build them from runs (`golf pack`) and check anyone's (`golf pack --check`).

One concept per module: `logs` reads train logs as text (every dialect of the records), `schema`
is submission.json's documented schema, `ledger` counts the bytes a folder ships, `codesize` the
code as a compressed wrapper, `sizes` checks every byte count, `claims` the scores submission.json
claims, `rules` the record track's clocks, GPUs and seeds, `readme_check` README.md, `findings`
grades what they find (error, warning, note), `significance` is the ≥0.005-nat test,
`requirements` finds third-party imports, `smoke` runs a packed train_gpt.py alone, `readme`
writes README.md, `build` makes a folder and `check` validates one. The packing itself is
golf/selfcontained.py, outside this package because the trainer imports it.
"""
