"""Benchmarks record which silicon they ran on, state its peak right, and never pool hosts."""

import json

import pytest

from tools.bench import train_step_table
from tools.bench.host import cpu_identity, host_key, one_host
from tools.bench.quiet import theoretical_fp32_peak


def _cpuinfo(vendor: str, family: int, model: int, flags: str, mhz: float = 2600.0) -> str:
    one = (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: Some CPU\nstepping\t: 1\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n"
    )
    return one + "\n" + one.replace("processor\t: 0", "processor\t: 1") + "\n"


ZEN4 = _cpuinfo("AuthenticAMD", 25, 17, "fpu sse avx avx2 fma avx512f avx512_bf16")
ZEN3 = _cpuinfo("AuthenticAMD", 25, 1, "fpu sse avx avx2 fma")
INTEL = _cpuinfo("GenuineIntel", 6, 143, "fpu sse avx avx2 fma avx512f amx_tile amx_bf16")


def test_identity_names_family_model_and_isa():
    cpu = cpu_identity(ZEN4)
    assert (cpu["vendor"], cpu["family"], cpu["model"]) == ("AuthenticAMD", 25, 17)
    assert cpu["isa"] == ["avx2", "fma", "avx512f", "avx512_bf16"]
    assert cpu["key"] == "Some CPU (family 25, model 17), AVX-512"
    assert cpu_identity(ZEN3)["key"] == "Some CPU (family 25, model 1), AVX2"
    assert cpu_identity("") == {}


def test_zen4_avx512_runs_on_256_bit_pipes_so_its_peak_is_avx2s():
    assert cpu_identity(ZEN4)["fma_datapath_bits"] == 256
    assert cpu_identity(ZEN3)["fma_datapath_bits"] == 256
    assert cpu_identity(INTEL)["fma_datapath_bits"] == 512
    zen4, intel = theoretical_fp32_peak(ZEN4), theoretical_fp32_peak(INTEL)
    assert "x 8 fp32 lanes" in zen4["basis"] and "x 16 fp32 lanes" in intel["basis"]
    assert intel["flops"] == pytest.approx(2 * zen4["flops"])


def _payload(cpuinfo: str | None) -> dict:
    machine = {} if cpuinfo is None else {"cpu": cpu_identity(cpuinfo)}
    row = {"config": "small", "valid": True, "jax_tok_s": 900.0, "torch_tok_s": 930.0,
           "speedup": 0.97, "jax_mfu": 0.6, "torch_mfu": 0.62,
           "machine": {"others_share": 0.001}}  # fmt: skip
    return {"rows": [row], "machine": machine, "matmul_2048_flops": {"jax": 2e11, "torch": 1.5e11}}


def test_runs_from_different_hosts_are_not_pooled(tmp_path):
    paths = []
    for name, info in (("run1.json", ZEN4), ("run2.json", ZEN4), ("run3.json", ZEN3)):
        paths.append(str(tmp_path / name))
        with open(paths[-1], "w") as f:
            json.dump(_payload(info), f)
    lines = train_step_table.table(paths[:2])
    assert "Host: Some CPU (family 25, model 17), AVX-512." in lines
    assert any(x.startswith("| small | 2 of 2 |") for x in lines)
    with pytest.raises(ValueError, match="2 different hosts.*run3.json"):
        train_step_table.table(paths)
    assert train_step_table.main(paths) == 2  # the command refuses too, with the message


def test_files_from_before_hosts_were_recorded_say_so():
    assert host_key(_payload(None)) == "host not recorded"
    assert one_host([("a", _payload(None)), ("b", _payload(None))]) == "host not recorded"
