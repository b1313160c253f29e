"""Pure reconcile functions: manifests, replica math, analysis verdicts and the step machine.

Nothing here does I/O; the handlers feed in what they read and apply what comes out.
"""
