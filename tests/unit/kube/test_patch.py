from conveyor.kube.patch import merge_patch


def apply(old, patch):
    out = dict(old)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = apply(out[k], v)
        else:
            out[k] = v
    return out


def test_removed_keys_become_null():
    old = {"phase": "Running", "currentStage": "deploy", "jobs": [1]}
    new = {"phase": "Succeeded", "jobs": [1]}
    patch = merge_patch(old, new)
    assert patch == {"phase": "Succeeded", "currentStage": None}
    assert apply(old, patch) == new


def test_nested_maps_patch_only_what_changed_and_lists_are_replaced():
    old = {"a": {"x": 1, "y": 2}, "l": [1, 2]}
    new = {"a": {"x": 1}, "l": [2]}
    assert merge_patch(old, new) == {"a": {"y": None}, "l": [2]}
    assert merge_patch(new, new) == {}
