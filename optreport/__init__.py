"""The report's package. Its folders follow the flow of the work:

engine/    data (find, check, load, split) -> models -> train (the one trainer)
runs/      keys (what makes two runs the same) -> sweep (grids and studies on Optuna) -> results
analysis/  statistics, comparisons, costs, tuning protocols, 2-D surfaces, conformance, probes
report/    figures, tables, readings -> build (the main job: notebooks, HTML, index, README)

The update rules themselves live in the top-level module ``optimizers``.
"""
