//! `linux.resources` on cgroup v1 and hybrid hosts (config-linux.md "Control groups"; the v1
//! file semantics are those of the kernel's Documentation/admin-guide/cgroup-v1/).

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use super::convert::{
    check_before_update, check_page_size, check_swap_not_below_limit, memory_v1, pids_max,
    rdma_line,
};
use super::devices::{normalize, v1_writes};
use super::error::CgroupError;
use super::fs::Dir;
use super::v1::Manager;
use super::v2;
use super::v2_apply::write_unified;

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
        let dir = m.need("devices")?;
        for (file, line) in v1_writes(&rules) {
            dir.write(file, &line)?;
        }
    }
    if let Some(limits) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        let (dir, suffix) = hugetlb_dir(m)?;
        for l in limits {
            check_page_size(l.page_size())?;
            let value = match (l.limit() < 0, suffix) {
                (true, "max") => "max".to_string(),
                (true, _) => "-1".to_string(),
                (false, _) => l.limit().to_string(),
            };
            dir.write(&format!("hugetlb.{}.{suffix}", l.page_size()), &value)?;
        }
    }
    if let Some(bio) = res.block_io() {
        block_io(m, bio, &mut warnings)?;
    }
    if let Some(net) = res.network() {
        network(m, net, &mut warnings)?;
    }
    if let Some(rdma) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
        match m.optional("rdma") {
            Some(dir) => {
                for (dev, limits) in rdma {
                    if let Some(line) = rdma_line(dev, limits) {
                        dir.write("rdma.max", &line)?;
                    }
                }
            }
            None => warnings
                .push("rdma: the rdma controller is not available on this host; ignored".into()),
        }
    }
    if let Some(unified) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        match &m.unified {
            Some((mount, dir)) if !mount.read_only => write_unified(dir, unified)?,
            Some((mount, _)) => {
                return Err(CgroupError::ControllerReadOnly {
                    controller: "unified".into(),
                    mount: mount.mount_point.clone(),
                })
            }
            None => {
                return Err(CgroupError::Unsupported {
                    field: "unified",
                    reason: "needs cgroup v2; this host uses cgroup v1 only",
                })
            }
        }
    }
    Ok(warnings)
}

/// hugetlb lives in a v1 hierarchy (`hugetlb.<size>.limit_in_bytes`) or, on hybrid hosts such
/// as ours, in the cgroup2 mount (`hugetlb.<size>.max`).
fn hugetlb_dir(m: &Manager) -> Result<(&Dir, &'static str), CgroupError> {
    if m.find("hugetlb").is_some() {
        return Ok((m.need("hugetlb")?, "limit_in_bytes"));
    }
    if let Some((mount, dir)) = &m.unified {
        if v2::controllers(dir).is_ok_and(|c| c.iter().any(|c| c == "hugetlb")) {
            if mount.read_only {
                return Err(CgroupError::ControllerReadOnly {
                    controller: "hugetlb".into(),
                    mount: mount.mount_point.clone(),
                });
            }
            return Ok((dir, "max"));
        }
    }
    Err(CgroupError::ControllerUnavailable {
        controller: "hugetlb".into(),
    })
}

fn memory(m: &Manager, mem: &LinuxMemory, w: &mut Vec<String>) -> Result<(), CgroupError> {
    let limit = mem
        .limit()
        .map(|v| memory_v1("memory.limit", v))
        .transpose()?
        .flatten();
    let soft = mem
        .reservation()
        .map(|v| memory_v1("memory.reservation", v))
        .transpose()?
        .flatten();
    let memsw = mem
        .swap()
        .map(|v| memory_v1("memory.swap", v))
        .transpose()?
        .flatten();
    if let (Some(l), Some(s)) = (mem.limit(), mem.swap()) {
        check_swap_not_below_limit(l, s)?;
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(CgroupError::InvalidValue {
                field: "memory.swappiness",
                value: s.to_string(),
                reason: "must be between 0 and 100".into(),
            });
        }
    }
    if mem.kernel().is_some() {
        w.push("memory.kernel: kernel memory limits are not supported; ignored".into());
    }
    let needed = limit.is_some()
        || soft.is_some()
        || memsw.is_some()
        || mem.swappiness().is_some()
        || mem.disable_oom_killer() == Some(true)
        || mem.use_hierarchy().is_some()
        || mem.kernel_tcp().is_some();
    if !needed {
        return Ok(());
    }
    let dir = m.need("memory")?;
    if let (Some(true), Some(l)) = (mem.check_before_update(), mem.limit()) {
        check_before_update(dir, "memory.usage_in_bytes", l)?;
    }
    match (limit, memsw) {
        (Some(l), Some(s)) if dir.exists("memory.memsw.limit_in_bytes") => {
            // The kernel keeps limit ≤ memsw at every step: raise memsw first when the new memsw
            // is at least the current limit, otherwise lower the limit first.
            let current = dir.read_u64("memory.limit_in_bytes")?;
            let new_memsw = s.parse::<u64>().unwrap_or(u64::MAX);
            if new_memsw >= current {
                dir.write("memory.memsw.limit_in_bytes", &s)?;
                dir.write("memory.limit_in_bytes", &l)?;
            } else {
                dir.write("memory.limit_in_bytes", &l)?;
                dir.write("memory.memsw.limit_in_bytes", &s)?;
            }
        }
        (limit, memsw) => {
            if let Some(l) = limit {
                dir.write("memory.limit_in_bytes", &l)?;
            }
            if let Some(s) = memsw {
                if dir.exists("memory.memsw.limit_in_bytes") {
                    dir.write("memory.memsw.limit_in_bytes", &s)?;
                } else {
                    w.push(
                        "memory.swap: swap accounting is not enabled on this host (no memory.memsw.limit_in_bytes); the memory+swap limit was not applied"
                            .into(),
                    );
                }
            }
        }
    }
    if let Some(s) = soft {
        dir.write("memory.soft_limit_in_bytes", &s)?;
    }
    if let Some(s) = mem.swappiness() {
        dir.write("memory.swappiness", &s.to_string())?;
    }
    if let Some(disable) = mem.disable_oom_killer() {
        dir.write("memory.oom_control", if disable { "1" } else { "0" })?;
    }
    if let Some(hierarchical) = mem.use_hierarchy() {
        match dir.read_opt("memory.use_hierarchy")? {
            Some(cur) if (cur.trim() == "1") != hierarchical => {
                dir.write("memory.use_hierarchy", if hierarchical { "1" } else { "0" })?;
            }
            Some(_) => {}
            None if !hierarchical => w.push(
                "memory.useHierarchy: this kernel always accounts hierarchically; ignored".into(),
            ),
            None => {}
        }
    }
    if let Some(tcp) = mem.kernel_tcp() {
        if dir.exists("memory.kmem.tcp.limit_in_bytes") {
            dir.write("memory.kmem.tcp.limit_in_bytes", &tcp.to_string())?;
        } else {
            w.push("memory.kernelTCP: not supported by this kernel; ignored".into());
        }
    }
    Ok(())
}

fn cpu(m: &Manager, cpu: &LinuxCpu, w: &mut Vec<String>) -> Result<(), CgroupError> {
    let shares = cpu.shares().filter(|s| *s > 0);
    let needs_cpu = shares.is_some()
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.realtime_runtime().is_some()
        || cpu.realtime_period().is_some()
        || cpu.idle().is_some()
        || cpu.burst().is_some();
    if needs_cpu {
        let dir = m.need("cpu")?;
        if let Some(s) = shares {
            dir.write("cpu.shares", &s.to_string())?;
        }
        if let Some(p) = cpu.period() {
            dir.write("cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = cpu.quota() {
            let q = if q > 0 {
                q.to_string()
            } else {
                "-1".to_string()
            };
            dir.write("cpu.cfs_quota_us", &q)?;
        }
        let optional = |file: &str, value: String, w: &mut Vec<String>| {
            if dir.exists(file) {
                dir.write(file, &value)
            } else {
                w.push(format!(
                    "cpu: this kernel has no {file}; the setting was ignored"
                ));
                Ok(())
            }
        };
        // The runtime may not exceed the period: set the period first.
        if let Some(p) = cpu.realtime_period() {
            optional("cpu.rt_period_us", p.to_string(), w)?;
        }
        if let Some(r) = cpu.realtime_runtime() {
            optional("cpu.rt_runtime_us", r.to_string(), w)?;
        }
        if let Some(b) = cpu.burst() {
            optional("cpu.cfs_burst_us", b.to_string(), w)?;
        }
        if let Some(i) = cpu.idle() {
            optional("cpu.idle", i.to_string(), w)?;
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

/// blkio: each setting is written if this host has its file (weights need the CFQ or BFQ
/// scheduler), else it becomes a warning.
fn block_io(m: &Manager, bio: &LinuxBlockIo, w: &mut Vec<String>) -> Result<(), CgroupError> {
    let dir = m.optional("blkio");
    let mut write = |files: &[&str], value: String, what: &str| -> Result<(), CgroupError> {
        match dir.and_then(|d| files.iter().find(|f| d.exists(f)).map(|f| (d, *f))) {
            Some((d, f)) => d.write(f, &value),
            None => {
                w.push(format!(
                    "blockIO.{what}: not supported on this host (no {}); ignored",
                    files[0]
                ));
                Ok(())
            }
        }
    };
    if let Some(v) = bio.weight() {
        write(
            &["blkio.weight", "blkio.bfq.weight"],
            v.to_string(),
            "weight",
        )?;
    }
    if let Some(v) = bio.leaf_weight() {
        write(&["blkio.leaf_weight"], v.to_string(), "leafWeight")?;
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(v) = d.weight() {
            let line = format!("{}:{} {v}", d.major(), d.minor());
            write(
                &["blkio.weight_device", "blkio.bfq.weight_device"],
                line,
                "weightDevice",
            )?;
        }
        if let Some(v) = d.leaf_weight() {
            let line = format!("{}:{} {v}", d.major(), d.minor());
            write(
                &["blkio.leaf_weight_device"],
                line,
                "weightDevice.leafWeight",
            )?;
        }
    }
    for (file, what, list) in [
        (
            "blkio.throttle.read_bps_device",
            "throttleReadBpsDevice",
            bio.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            "throttleWriteBpsDevice",
            bio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            "throttleReadIOPSDevice",
            bio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            "throttleWriteIOPSDevice",
            bio.throttle_write_iops_device(),
        ),
    ] {
        for d in list.iter().flatten() {
            write(
                &[file],
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                what,
            )?;
        }
    }
    Ok(())
}

/// net_cls / net_prio: written when mounted, else a warning.
fn network(m: &Manager, net: &LinuxNetwork, w: &mut Vec<String>) -> Result<(), CgroupError> {
    if let Some(id) = net.class_id() {
        match m.optional("net_cls") {
            Some(dir) => dir.write("net_cls.classid", &id.to_string())?,
            None => w.push(
                "network.classID: the net_cls controller is not available on this host; ignored"
                    .into(),
            ),
        }
    }
    if let Some(prios) = net.priorities().as_ref().filter(|p| !p.is_empty()) {
        match m.optional("net_prio") {
            Some(dir) => {
                for p in prios {
                    dir.write("net_prio.ifpriomap", &format!("{} {}", p.name(), p.priority()))?;
                }
            }
            None => w.push(
                "network.priorities: the net_prio controller is not available on this host; ignored".into(),
            ),
        }
    }
    Ok(())
}
