//! `linux.resources` on cgroup v2 (config-linux.md "Control groups", and the runtime-spec's
//! conversion of v1 values for v2 hosts).

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::bpf;
use super::convert::{
    blkio_weight_to_io_weight, check_before_update, check_page_size, check_swap_not_below_limit,
    check_unified_key, cpu_max, memory_v2, pids_max, rdma_line, shares_to_weight, swap_v2,
};
use super::devices::normalize;
use super::error::CgroupError;
use super::fs::Dir;
use super::v2::Manager;

pub(crate) fn apply(m: &Manager, res: &LinuxResources) -> Result<Vec<String>, CgroupError> {
    let mut warnings = Vec::new();
    if let Some(mem) = res.memory() {
        memory(m, mem, &mut warnings)?;
    }
    if let Some(cpu) = res.cpu() {
        self::cpu(m, cpu, &mut warnings)?;
    }
    if let Some(p) = res.pids() {
        m.need("pids")?.write("pids.max", &pids_max(p.limit()))?;
    }
    if let Some(rules) = res.devices() {
        let rules = normalize(rules, &mut warnings)?;
        bpf::install(m.writable("devices")?, &rules)?;
    }
    if let Some(limits) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        let dir = m.need("hugetlb")?;
        for l in limits {
            check_page_size(l.page_size())?;
            let value = if l.limit() < 0 {
                "max".to_string()
            } else {
                l.limit().to_string()
            };
            dir.write(&format!("hugetlb.{}.max", l.page_size()), &value)?;
        }
    }
    if let Some(bio) = res.block_io() {
        block_io(&m.dir, bio, &mut warnings)?;
    }
    if let Some(net) = res.network() {
        if net.class_id().is_some() || net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            warnings.push(
                "network: classID and priorities need the v1 net_cls/net_prio controllers, which cgroup v2 does not have; ignored"
                    .into(),
            );
        }
    }
    if let Some(rdma) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
        if m.dir.exists("rdma.max") {
            for (dev, limits) in rdma {
                if let Some(line) = rdma_line(dev, limits) {
                    m.dir.write("rdma.max", &line)?;
                }
            }
        } else {
            warnings
                .push("rdma: the rdma controller is not available on this host; ignored".into());
        }
    }
    if let Some(unified) = res.unified() {
        write_unified(m.writable("unified")?, unified)?;
    }
    Ok(warnings)
}

/// Writes `linux.resources.unified` (sorted by file name, for a deterministic order).
pub(crate) fn write_unified(
    dir: &Dir,
    unified: &std::collections::HashMap<String, String>,
) -> Result<(), CgroupError> {
    let sorted: BTreeMap<_, _> = unified.iter().collect();
    for (key, value) in sorted {
        check_unified_key(key)?;
        dir.write(key, value)?;
    }
    Ok(())
}

fn memory(m: &Manager, mem: &LinuxMemory, w: &mut Vec<String>) -> Result<(), CgroupError> {
    let limit = mem
        .limit()
        .map(|v| memory_v2("memory.limit", v))
        .transpose()?
        .flatten();
    let low = mem
        .reservation()
        .map(|v| memory_v2("memory.reservation", v))
        .transpose()?
        .flatten();
    let swap = match mem.swap() {
        Some(s) => {
            if let Some(l) = mem.limit() {
                check_swap_not_below_limit(l, s)?;
            }
            swap_v2(mem.limit(), s)?
        }
        None => None,
    };
    if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
        w.push("memory.kernel: kernel memory limits are not supported; ignored".into());
    }
    if mem.swappiness().is_some() {
        w.push("memory.swappiness: not supported on cgroup v2; ignored".into());
    }
    if mem.use_hierarchy() == Some(false) {
        w.push("memory.useHierarchy: cgroup v2 always accounts hierarchically; ignored".into());
    }
    if mem.disable_oom_killer() == Some(true) {
        w.push("memory.disableOOMKiller: not supported on cgroup v2; ignored".into());
    }
    if limit.is_none() && low.is_none() && swap.is_none() {
        return Ok(());
    }
    let dir = m.need("memory")?;
    if let (Some(true), Some(l)) = (mem.check_before_update(), mem.limit()) {
        check_before_update(dir, "memory.current", l)?;
    }
    if let Some(s) = swap {
        if dir.exists("memory.swap.max") {
            dir.write("memory.swap.max", &s)?;
        } else {
            w.push(
                "memory.swap: swap accounting is not enabled on this host (no memory.swap.max); the swap limit was not applied"
                    .into(),
            );
        }
    }
    if let Some(l) = limit {
        dir.write("memory.max", &l)?;
    }
    if let Some(l) = low {
        dir.write("memory.low", &l)?;
    }
    Ok(())
}

fn cpu(m: &Manager, cpu: &LinuxCpu, w: &mut Vec<String>) -> Result<(), CgroupError> {
    let shares = cpu.shares().filter(|s| *s > 0);
    let needs_cpu = shares.is_some()
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.idle().is_some()
        || cpu.burst().is_some();
    if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
        w.push("cpu.realtimeRuntime/realtimePeriod: not supported on cgroup v2; ignored".into());
    }
    if needs_cpu {
        let dir = m.need("cpu")?;
        if let Some(s) = shares {
            dir.write("cpu.weight", &shares_to_weight(s).to_string())?;
        }
        let current = if cpu.quota().is_none() && cpu.period().is_some() {
            dir.read_opt("cpu.max")?
        } else {
            None
        };
        if let Some(v) = cpu_max(cpu.quota(), cpu.period(), current.as_deref()) {
            dir.write("cpu.max", &v)?;
        }
        if let Some(b) = cpu.burst() {
            if dir.exists("cpu.max.burst") {
                dir.write("cpu.max.burst", &b.to_string())?;
            } else {
                w.push(
                    "cpu.burst: not supported by this kernel (no cpu.max.burst); ignored".into(),
                );
            }
        }
        if let Some(idle) = cpu.idle() {
            if dir.exists("cpu.idle") {
                dir.write("cpu.idle", &idle.to_string())?;
            } else {
                w.push("cpu.idle: not supported by this kernel (no cpu.idle); ignored".into());
            }
        }
    }
    let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = m.need("cpuset")?;
        if let Some(c) = cpus {
            dir.write("cpuset.cpus", c)?;
        }
        if let Some(s) = mems {
            dir.write("cpuset.mems", s)?;
        }
    }
    Ok(())
}

/// `io.*`: weights go to `io.bfq.weight` (same 1–1000 range as v1) when the BFQ scheduler is in
/// use, else to `io.weight` (converted to 1–10000); throttles go to `io.max`. A file the host
/// lacks gives a warning.
fn block_io(dir: &Dir, bio: &LinuxBlockIo, w: &mut Vec<String>) -> Result<(), CgroupError> {
    let bfq = dir.exists("io.bfq.weight");
    let weight_file = if bfq { "io.bfq.weight" } else { "io.weight" };
    let convert = |v: u16| {
        if bfq {
            u64::from(v)
        } else {
            blkio_weight_to_io_weight(v)
        }
    };
    let mut weight_writes = Vec::new();
    if let Some(v) = bio.weight() {
        weight_writes.push(format!("default {}", convert(v)));
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(v) = d.weight() {
            weight_writes.push(format!("{}:{} {}", d.major(), d.minor(), convert(v)));
        }
    }
    if !weight_writes.is_empty() {
        if dir.exists(weight_file) {
            for line in &weight_writes {
                dir.write(weight_file, line)?;
            }
        } else {
            w.push(
                "blockIO.weight: the io controller has no weight file on this host; ignored".into(),
            );
        }
    }
    if bio.leaf_weight().is_some()
        || bio
            .weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        w.push("blockIO.leafWeight: not supported on cgroup v2; ignored".into());
    }
    let mut max_lines = Vec::new();
    for (key, list) in [
        ("rbps", bio.throttle_read_bps_device()),
        ("wbps", bio.throttle_write_bps_device()),
        ("riops", bio.throttle_read_iops_device()),
        ("wiops", bio.throttle_write_iops_device()),
    ] {
        for d in list.iter().flatten() {
            max_lines.push(format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()));
        }
    }
    if !max_lines.is_empty() {
        if dir.exists("io.max") {
            for line in &max_lines {
                dir.write("io.max", line)?;
            }
        } else {
            w.push(
                "blockIO.throttle*: the io controller is not available on this host; ignored"
                    .into(),
            );
        }
    }
    Ok(())
}
