from ._base import AbstractDataObjective as AbstractDataObjective, AbstractObjective as AbstractObjective
