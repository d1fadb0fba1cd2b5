import json

import pytest

SDXL = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"


@pytest.fixture
def sdxl(transactional_db, replicate_settings, replicate_cloud):
    """The catalog's SDXL on Replicate's cloud (its stand-in, tests.fakes.replicate_cloud)."""
    from app.services import catalog

    replicate_cloud.reset()
    entry = next(e for e in json.loads(catalog.REPLICATE_CATALOG.read_text()) if e["version_id"] == SDXL)
    version = catalog.add_version(
        "stability-ai",
        "sdxl",
        "replicate",
        f"stability-ai/sdxl:{SDXL}",
        entry["openapi_schema"],
        entry["cog_version"],
        version_id=SDXL,
    )
    catalog.refresh_availability(version, max_age=0)
    return version
