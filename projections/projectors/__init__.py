"""The registry of projectors, by name."""

from projections.engine import Projection
from projections.projectors.products import ProductProjection
from projections.projectors.sellers import SellerProjection

PROJECTIONS: dict[str, type[Projection]] = {
    projection.name: projection for projection in (ProductProjection, SellerProjection)
}
