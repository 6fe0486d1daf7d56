"""The node-side lifecycle: apply a driver tree to the host through a journal, verify it, undo it."""
