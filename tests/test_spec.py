"""The skew schema: loading, views, and one-line errors naming the field."""

import pytest

from sim2real.spec import FIELDS, NOMINAL, SkewSpec, SkewSpecError


def test_omitted_fields_are_nominal():
    spec = SkewSpec.load({"dynamics": {"friction_scale": 0.7}})
    assert spec.active() == {"dynamics.friction_scale": 0.7}
    assert spec.values()["timing.obs_latency_s"] == 0.0
    assert SkewSpec.load(None) == NOMINAL and not NOMINAL.active()


def test_only_keeps_the_named_fields():
    spec = SkewSpec.load({"dynamics": {"mass_scale": 1.2}, "timing": {"obs_latency_s": 0.02}})
    assert spec.only(["timing.obs_latency_s"]).active() == {"timing.obs_latency_s": 0.02}
    assert spec.only([]).active() == {}
    with pytest.raises(SkewSpecError, match="unknown skew field"):
        spec.only(["timing.nope"])


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "real.yaml"
    path.write_text("sensing:\n  noise_std: [0.1, 0.2]\ntiming:\n  action_latency_s: 0.01\n")
    spec = SkewSpec.load(path)
    assert spec.to_dict() == {
        "sensing": {"noise_std": [0.1, 0.2]},
        "timing": {"action_latency_s": 0.01},
    }
    assert SkewSpec.load(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"dynamics": {"friction_scale": -0.5}}, "dynamics.friction_scale must be > 0.0, got -0.5"),
        ({"dynamics": {"mass_scale": 0}}, "dynamics.mass_scale must be > 0.0, got 0"),
        (
            {"dynamics": {"frict": 1.0}},
            "unknown skew field 'dynamics.frict'; allowed: friction_scale",
        ),
        ({"dynamic": {}}, "unknown skew field 'dynamic'; allowed: description, dynamics"),
        ({"timing": {"obs_latency_s": -0.01}}, "timing.obs_latency_s must be >= 0.0, got -0.01"),
        ({"actuation": {"noise_std": "high"}}, "actuation.noise_std must be a number, got 'high'"),
        ({"sensing": {"noise_std": [0.1, -1]}}, "sensing.noise_std must be >= 0"),
        ({"sensing": {"dropout_prob": 1.5}}, "sensing.dropout_prob must be <= 1.0, got 1.5"),
        ({"actuation": {"deadband": 0.7}}, "actuation.deadband must be <= 0.5, got 0.7"),
        ({"dynamics": {"gravity": [0, -9.81]}}, "dynamics.gravity must have exactly 3 components"),
        ({"dynamics": {"damping_scale": True}}, "dynamics.damping_scale must be a number"),
    ],
)
def test_bad_values_name_the_field(raw, message):
    with pytest.raises(SkewSpecError) as caught:
        SkewSpec.load(raw)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(SkewSpecError, match="no such file"):
        SkewSpec.load(tmp_path / "absent.yaml")


def test_every_field_is_listed_with_a_unit():
    from sim2real.spec import field_info

    contract = {  # DESIGN.md section 3: these names and meanings are the contract
        "dynamics.friction_scale", "dynamics.mass_scale", "dynamics.damping_scale",
        "dynamics.actuator_strength", "dynamics.gravity", "actuation.noise_std",
        "actuation.deadband", "sensing.noise_std", "sensing.bias_std", "sensing.dropout_prob",
        "timing.obs_latency_s", "timing.action_latency_s",
    }  # fmt: skip
    assert contract < set(FIELDS)
    for name in FIELDS:
        unit, meaning = field_info(name)
        assert unit and meaning
