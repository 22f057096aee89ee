import pytest

from jaxlvlm.runners import RUNNERS, available_runners, get_runner, register_runner


def test_builtin_runners_resolve_by_import():
    assert callable(get_runner("train"))
    assert callable(get_runner("eval"))
    assert {"train", "eval"} <= set(available_runners())


def test_register_and_unknown():
    @register_runner("_test_runner")
    def _r(config, workdir):
        return {"ok": True}

    assert get_runner("_test_runner")(None, "") == {"ok": True}
    with pytest.raises(ValueError, match="twice"):
        register_runner("_test_runner")(lambda c, w: {})
    del RUNNERS["_test_runner"]
    with pytest.raises(ValueError, match="names no runner"):
        get_runner("no_such_runner")
