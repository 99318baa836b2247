from ._base import AbstractExactTarget as AbstractExactTarget, AbstractTarget as AbstractTarget
