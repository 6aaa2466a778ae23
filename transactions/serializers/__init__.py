"""Transaction serializers, a module per resource: orders, the portfolio, transfers."""

from .orders import (
    TransactionFilterSerializer,
    TransactionReplaceSerializer,
    TransactionSerializer,
    TransactionSubmitSerializer,
)
from .portfolio import PortfolioSerializer, PositionSerializer
from .transfers import TransferCreateSerializer, TransferSerializer

__all__ = [
    "PortfolioSerializer",
    "PositionSerializer",
    "TransactionFilterSerializer",
    "TransactionReplaceSerializer",
    "TransactionSerializer",
    "TransactionSubmitSerializer",
    "TransferCreateSerializer",
    "TransferSerializer",
]
