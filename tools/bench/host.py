"""Which CPU a benchmark ran on, so runs from different hosts are never pooled.

The development VM is not always the same silicon: the runs of 2026-11-30 and 2026-12-01 were on an
AMD EPYC with AVX2 only, those of 2026-12-07 on an AMD EPYC Zen 4 (family 25, model 17) with
AVX-512, where PyTorch's 2048^3 matmul ran at 149 against JAX's 199 GFLOP/s instead of the two
running level. A ratio measured on one host says nothing about another, so every result file
records ``cpu_identity()`` and the table renderers refuse to take a median across hosts.
"""

from __future__ import annotations

# ISA extensions that change which GEMM kernels the libraries pick.
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def fma_datapath_bits(vendor: str, family: int, flags: set[str]) -> int:
    """Width of one FMA pipe in bits. AMD Zen 4 (family 25 with AVX-512) runs 512-bit instructions
    on 256-bit pipes, so its fp32 peak is that of AVX2; Zen 5 (family 26) and Intel's AVX-512 cores
    have 512-bit pipes."""
    if "avx512f" in flags and not (vendor == "AuthenticAMD" and family < 26):
        return 512
    if "avx2" in flags or "avx" in flags:
        return 256
    return 128


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """{'vendor', 'model_name', 'family', 'model', 'stepping', 'isa', 'fma_datapath_bits', 'mhz',
    'key'} from /proc/cpuinfo's first processor (``cpuinfo``: its text, read when None); {} when
    unreadable. 'key' is one line naming the silicon: what tables group and compare runs by."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return {}
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: the VM's cores are alike
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    if not fields:
        return {}
    flags = set(fields.get("flags", "").split())
    vendor = fields.get("vendor_id", "unknown")
    family, model = int(fields.get("cpu family", -1)), int(fields.get("model", -1))
    isa = [f for f in _ISA_FLAGS if f in flags]
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    model_name = fields.get("model name", "unknown")
    return {
        "vendor": vendor,
        "model_name": model_name,
        "family": family,
        "model": model,
        "stepping": int(fields.get("stepping", -1)),
        "isa": isa,
        "fma_datapath_bits": fma_datapath_bits(vendor, family, flags),
        "mhz": float(fields.get("cpu MHz", "nan")),
        "key": f"{model_name} (family {family}, model {model}), {simd}",
    }


NOT_RECORDED = "host not recorded"


def host_key(payload: dict) -> str:
    """The host a result file's run came from (its machine record), or a marker for files written
    before hosts were recorded."""
    cpu = payload.get("machine", {}).get("cpu") or {}
    return cpu.get("key", NOT_RECORDED)


def on_host(key: str) -> str:
    """' on KEY' for a block's header line, '' for files written before hosts were recorded (so
    their blocks read as they always did)."""
    return "" if key == NOT_RECORDED else f" on {key}"


def one_host(payloads: list[tuple[str, dict]]) -> str:
    """The host every (name, payload) run came from; ValueError naming each host's files when they
    differ (pool only runs from one host; render each host's runs as a block of its own)."""
    by_host: dict[str, list[str]] = {}
    for name, payload in payloads:
        by_host.setdefault(host_key(payload), []).append(name)
    if len(by_host) > 1:
        listing = "; ".join(f"{key}: {', '.join(names)}" for key, names in by_host.items())
        raise ValueError(
            f"these runs come from {len(by_host)} different hosts ({listing}); a median across "
            "hosts mixes different silicon: render each host's runs separately"
        )
    return next(iter(by_host), NOT_RECORDED)
