"""How outputs reach the layers panel: one group per run, outputs in their rank whatever the
order QGIS loads them in, the group at the top (QGIS 3.22's path, where the post-processor
places each layer); on QGIS >= 3.32 the details carry groupName and layerSortKey instead
(simulated: those attributes are set only where the details have them)."""
from types import SimpleNamespace

from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsVectorLayer

from glacier_mapper_plugin.algorithms.base import RANK, place_in_group, present, run_name, style_output


def _layer(name):
    layer = QgsVectorLayer("Polygon?crs=EPSG:32632", name, "memory")
    assert layer.isValid()
    return layer


def test_a_runs_outputs_sit_in_its_group_in_rank_order_whatever_the_load_order():
    project = QgsProject()
    scene = _layer("scene")
    project.addMapLayer(scene)
    layers = {rank: _layer(name) for rank, name in enumerate(("polygons", "mask", "probability"))}
    for rank in (2, 0, 1):  # QGIS loads outputs in the order of its dictionary, not ours
        project.addMapLayer(layers[rank])  # QGIS 3.22 puts each at the top of the tree
        place_in_group(project.layerTreeRoot(), layers[rank], "Glaciers mapped: scene (12:00:00)", rank)
    root = project.layerTreeRoot()
    group = root.children()[0]
    assert group.name() == "Glaciers mapped: scene (12:00:00)"
    assert [c.layer().name() for c in group.children()] == ["polygons", "mask", "probability"]
    assert [c.customProperty(RANK) for c in group.children()] == [0, 1, 2]
    assert [c.layer().name() for c in root.children()[1:]] == ["scene"]  # the imagery below the run


def test_the_post_processor_styles_sets_opacity_and_places():
    project = QgsProject()
    context = QgsProcessingContext()
    context.setProject(project)
    layer = _layer("area change")
    project.addMapLayer(layer)
    path = "/tmp/x.gpkg"
    context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails("x", project, "OUTPUT"))
    present(context, {"OUTPUT": path, "OUTPUT_SUMMARY": None}, "Area change: inv (12:00:00)",
            [("OUTPUT", "area_change.qml", "Area change - inv", 0.8), ("OUTPUT_SUMMARY", None, "Regional summary")])
    details = context.layerToLoadOnCompletionDetails(path)
    assert details.name == "Area change - inv"
    details.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
    assert layer.renderer().type() == "RuleRenderer" and layer.opacity() == 0.8
    assert project.layerTreeRoot().children()[0].name() == "Area change: inv (12:00:00)"


def test_qgis_332_details_get_the_group_and_sort_key():
    """QGIS >= 3.32: LayerDetails has groupName and layerSortKey and QGIS places the layer
    itself (the layer is not in the tree when the post-processor runs)."""
    class Details(SimpleNamespace):
        def setPostProcessor(self, post):  # noqa: N802 (QGIS API name)
            self.post = post

    details = Details(name="", layerTypeHint=None, groupName="", layerSortKey=0)
    context = SimpleNamespace(willLoadLayerOnCompletion=lambda path: True,
                              layerToLoadOnCompletionDetails=lambda path: details)
    style_output(context, "/tmp/p.tif", "probability.qml", "Glacier probability - s", "Glaciers mapped: s", 2, 0.6)
    assert (details.groupName, details.layerSortKey, details.name) == ("Glaciers mapped: s", 2, "Glacier probability - s")
    project = QgsProject()
    layer = _layer("not in the tree yet")
    project.addMapLayer(layer, False)
    place_in_group(project.layerTreeRoot(), layer, "Glaciers mapped: s", 2)  # nothing to move
    assert project.layerTreeRoot().children() == []
    # QGIS 3.22's details have no groupName: nothing is set on them.
    old = Details(name="", layerTypeHint=None)
    context = SimpleNamespace(willLoadLayerOnCompletion=lambda path: True, layerToLoadOnCompletionDetails=lambda path: old)
    style_output(context, "/tmp/p.tif", None, None, "g", 1)
    assert not hasattr(old, "groupName")


def test_run_names_tell_runs_apart():
    name = run_name("Glaciers mapped", "S2_L2A_20230901")
    assert name.startswith("Glaciers mapped: S2_L2A_20230901 (") and name.endswith(")")
