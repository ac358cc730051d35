"""A team's own asset downstream of image-versions, in the team's own module: nothing of the
project is edited. Load it instead of `assets.definitions`:

    dagster dev -f downstream.py        # or: python_file: downstream.py in workspace.yaml

The project's definitions (sources from $IMAGE_VERSIONS_CONFIG, data in
$IMAGE_VERSIONS_DATA_DIR) are merged with the team's; `image_versions_warehouse` is upstream.
The project's Dagster layer is the top-level package `assets`: in a repository with an
`assets` package of its own, run the project as its own code location instead (deploy/), and
depend on `dg.AssetKey("image_versions_warehouse")` across locations.
"""

import dagster as dg

from assets.definitions import definitions_from_environment
from assets.resources import WarehouseResource

FAILED_BUILDS = """
    SELECT image_name, count(*) AS failed_versions
    FROM image_versions
    WHERE status IN ('CREATE_FAILED', 'DELETE_FAILED')
    GROUP BY image_name
    ORDER BY failed_versions DESC, image_name
"""


@dg.asset(deps=["image_versions_warehouse"], kinds={"duckdb"})
def failed_builds_per_image(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Images ranked by their failed versions: an Arrow table from the warehouse resource,
    handed to pandas (polars takes the same table with `polars.from_arrow`)."""
    frame = warehouse.arrow(FAILED_BUILDS).to_pandas()
    return dg.MaterializeResult(
        metadata={
            "images_with_failures": len(frame),
            "failed_versions": int(frame["failed_versions"].sum()),
            "worst": dg.MetadataValue.json(frame.head(5).to_dict("records")),
        }
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The project's definitions and the team's, loaded when Dagster loads the location."""
    return dg.Definitions.merge(
        definitions_from_environment(), dg.Definitions(assets=[failed_builds_per_image])
    )
