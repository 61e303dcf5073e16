"""A local Microsoft Graph (contacts, delta, $batch, subscriptions) and identity platform."""

from sandbox.graph.app import graph_app
from sandbox.graph.identity import identity_app
from sandbox.graph.running import RunningGraph, running_graph_sandbox, start_graph_sandbox
from sandbox.graph.state import GraphSandbox

__all__ = [
    "GraphSandbox",
    "RunningGraph",
    "graph_app",
    "identity_app",
    "running_graph_sandbox",
    "start_graph_sandbox",
]
