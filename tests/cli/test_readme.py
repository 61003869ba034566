"""The README's generated tables are current (regenerate them with ``python -m tests.readme_tables --write``)."""
from cnnrun.layers.registry import layer_types
from cnnrun.model.zoo import zoo_names
from tests.conftest import REPO
from tests.readme_tables import LAYER_MARKERS, ZOO_MARKERS, between, layer_table, zoo_table

HINT = "run: python -m tests.readme_tables --write"


def test_readme_lists_every_layer_type_as_generated():
    readme = (REPO / "README.md").read_text()
    assert between(readme, LAYER_MARKERS) == layer_table(), HINT
    for name in layer_types():
        assert f"| `{name}` |" in readme


def test_readme_zoo_table_is_current():
    readme = (REPO / "README.md").read_text()
    assert between(readme, ZOO_MARKERS) == zoo_table(), HINT
    for name in zoo_names():
        assert f"| `{name}` |" in readme
