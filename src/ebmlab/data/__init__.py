"""Built-in data sets, all generated in code (nothing is downloaded)."""

__all__: list[str] = []

from ebmlab.data.toy import (  # noqa: E402
    checkerboard,
    eight_gaussians,
    multimodal_1d,
    rings,
    two_branch,
    two_moons,
)

__all__ += [
    "eight_gaussians",
    "rings",
    "checkerboard",
    "two_moons",
    "multimodal_1d",
    "two_branch",
]

from ebmlab.data.course import ellipse, horn, horn_radii  # noqa: E402

__all__ += ["ellipse", "horn", "horn_radii"]
