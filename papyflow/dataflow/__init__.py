"""Synchronized dataflow: data units, sources and sinks, inputs, outputs, loaders."""
