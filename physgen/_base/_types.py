"""Type aliases used in signatures (jaxtyping). Shapes are written in the docstrings too."""

from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Shaped

Shape = tuple[int, ...]
Scalar = Float[Array, ""]
Key = PRNGKeyArray

__all__ = ["Array", "ArrayLike", "Float", "Int", "Key", "Scalar", "Shape", "Shaped"]
