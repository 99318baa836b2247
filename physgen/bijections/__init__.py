from ._base import AbstractBijection as AbstractBijection
