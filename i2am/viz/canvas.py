"""The one way i2am makes a figure: a matplotlib ``Figure`` on its own Agg canvas (no pyplot state, the user's backend
untouched), and the one way it writes one."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(**kwargs) -> Figure:
    """A Figure on its own Agg canvas; kwargs go to ``Figure`` (figsize, dpi, ...)."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, **kwargs) -> Path:
    """Write ``fig`` to ``path`` (parents created); kwargs go to ``Figure.savefig`` (dpi, bbox_inches, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **kwargs)
    return path
