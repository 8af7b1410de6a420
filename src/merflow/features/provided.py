"""Features that come with a dataset instead of being computed from audio."""

from merflow.features.spec import FeatureSpec

# DEAM ships the MediaEval baseline features it was annotated with (features/<song_id>.csv): the
# Malik protocol can run on exactly those (the workflow's provided_features rule reads them).
DEAM_OPENSMILE = FeatureSpec(
    name="deam_opensmile",
    kind="windows",
    label="260 baseline features",
    malik_table="a",
    provided_by="deam",
    description="DEAM's own openSMILE features per 500 ms (features/<song_id>.csv)",
)
