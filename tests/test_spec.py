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


# --------------------------------------------------------------------------- no bad input slips
INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"dynamics": {"mass_scale": INF}}, "dynamics.mass_scale must be a finite number, got inf"),
        ({"dynamics": {"friction_scale": NAN}}, "dynamics.friction_scale must be a finite number"),
        ({"dynamics": {"gravity": [0, 0, -INF]}}, "dynamics.gravity must be a finite number"),
        ({"dynamics": {"gravity": [0, NAN, -9.81]}}, "dynamics.gravity must be a finite number"),
        ({"dynamics": {"damping_scale": [1.0, INF]}}, "dynamics.damping_scale must be a finite"),
        ({"actuation": {"noise_std": INF}}, "actuation.noise_std must be a finite number"),
        ({"sensing": {"noise_std": [0.1, NAN]}}, "sensing.noise_std must be a finite number"),
        ({"sensing": {"bias_std": INF}}, "sensing.bias_std must be a finite number"),
        ({"timing": {"obs_latency_s": INF}}, "timing.obs_latency_s must be a finite number"),
        ({"timing": {"action_latency_s": NAN}}, "timing.action_latency_s must be a finite"),
        ({"timing": {"control_jitter_s": -0.01}}, "timing.control_jitter_s must be >= 0.0"),
        ({"dynamics": {"mass_scale": [1.0, -1.0]}}, "dynamics.mass_scale must be > 0.0"),
        ({"dynamics": {"mass_scale": []}}, "dynamics.mass_scale must be one number, or one per"),
        ({"timing": {"obs_latency_s": [0.01]}}, "timing.obs_latency_s must be one number"),
        ({"dynamics.mass_scale": -2.0}, "dynamics.mass_scale must be > 0.0, got -2.0"),
    ],
)
def test_non_finite_and_misshapen_values_are_refused_naming_the_field(raw, message):
    with pytest.raises(SkewSpecError) as caught:
        SkewSpec.load(raw)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_numpy_arrays_and_numbers_are_taken_wherever_lists_and_numbers_are():
    import numpy as np

    spec = SkewSpec.load(
        {
            "dynamics": {"mass_scale": np.float32(1.5), "gravity": np.array([0.0, 0.0, -3.0])},
            "sensing": {"noise_std": np.array([0.1, 0.2])},
            "timing": {"obs_latency_s": np.float64(0.02)},
        }
    )
    assert spec.active() == {
        "dynamics.mass_scale": 1.5,
        "dynamics.gravity": [0.0, 0.0, -3.0],
        "sensing.noise_std": [0.1, 0.2],
        "timing.obs_latency_s": 0.02,
    }


def test_a_flat_point_and_a_nested_spec_are_the_same_spec():
    flat = {"dynamics.mass_scale": [1.1, 1.2], "timing.obs_latency_s": 0.02}
    assert SkewSpec.load(flat) == SkewSpec.load(
        {"dynamics": {"mass_scale": [1.1, 1.2]}, "timing": {"obs_latency_s": 0.02}}
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty; it must hold a mapping"),
        ("# only a comment\n", "is empty"),
        ("- dynamics\n- timing\n", "must hold a mapping of sections, got a list"),
        ("dynamics:\n  mass_scale: 1.1\n  mass_scale: 1.2\n", "duplicate key 'mass_scale'"),
        ("dynamics:\n  mass_scale: [1.0, 2.0\n", "not valid YAML at line 3, column 1"),
        ("dynamics: {mass_scale: 1.1\n", "not valid YAML at line 2"),
    ],
)
def test_bad_yaml_files_are_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "robot.yaml"
    path.write_text(text)
    with pytest.raises(SkewSpecError) as caught:
        SkewSpec.load(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_exponent_notation_in_yaml_is_a_number(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text("timing:\n  obs_latency_s: 2e-2\nsensing:\n  noise_std: [1e-3, 5E-2]\n")
    spec = SkewSpec.load(path)
    assert spec.timing.obs_latency_s == 0.02 and spec.sensing.noise_std == [0.001, 0.05]


def test_every_registered_skew_is_in_the_schema_with_unit_and_nominal():
    from sim2real.skews.registry import SKEWS

    assert tuple(SKEWS) != () and set(SKEWS) == set(FIELDS)
    for name, entry in SKEWS.items():
        assert NOMINAL.values()[name] == entry.nominal
        assert field_info_of(name) == (entry.unit, entry.meaning)


def field_info_of(name: str) -> tuple[str, str]:
    from sim2real.spec import field_info

    return field_info(name)
