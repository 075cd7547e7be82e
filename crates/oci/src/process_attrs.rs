//! Kernel attributes of the container process from the spec: execution domain
//! (`linux.personality`), I/O priority (`process.ioPriority`) and CPU scheduling policy
//! (`process.scheduler`), applied just before exec like runc does.

use oci_spec::runtime::{
    IOPriorityClass, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, Scheduler,
};

use crate::init::InitError;

const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// `struct sched_attr` of `sched_setattr(2)` (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

fn errno(step: &str) -> InitError {
    InitError::Sys {
        step: step.into(),
        source: nix::Error::last(),
    }
}

/// The `personality(2)` persona for the spec's domain; flags are refused by name.
pub fn persona(p: &LinuxPersonality) -> Result<libc::c_ulong, InitError> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(InitError::Other(
            "linux.personality.flags: no personality flags are supported".into(),
        ));
    }
    Ok(match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    })
}

/// The `ioprio_set(2)` value for the spec's class and level (0 highest, 7 lowest).
pub fn ioprio_value(class: IOPriorityClass, level: i64) -> Result<libc::c_int, InitError> {
    if !(0..=7).contains(&level) {
        return Err(InitError::Other(format!(
            "process.ioPriority.priority: {level} is outside 0..=7"
        )));
    }
    let class = match class {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    Ok(((class << IOPRIO_CLASS_SHIFT) | level as u32) as libc::c_int)
}

fn policy_number(p: LinuxSchedulerPolicy) -> Result<u32, InitError> {
    Ok(match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
        LinuxSchedulerPolicy::SchedIso => {
            return Err(InitError::Other(
                "process.scheduler.policy: SCHED_ISO is not implemented by Linux".into(),
            ))
        }
    })
}

fn flag_bit(f: &LinuxSchedulerFlag) -> u64 {
    match f {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

/// The `sched_setattr(2)` argument for the spec's scheduler.
pub fn sched_attr(s: &Scheduler) -> Result<SchedAttr, InitError> {
    let priority = s.priority().unwrap_or(0);
    let priority = u32::try_from(priority).map_err(|_| {
        InitError::Other(format!(
            "process.scheduler.priority: {priority} is negative"
        ))
    })?;
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_number(*s.policy())?,
        flags: s
            .flags()
            .iter()
            .flatten()
            .map(flag_bit)
            .fold(0, |a, b| a | b),
        nice: s.nice().unwrap_or(0),
        priority,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..SchedAttr::default()
    })
}

/// Apply the I/O priority and scheduler of a process (init or exec).
pub fn apply_process(p: &oci_spec::runtime::Process) -> Result<(), InitError> {
    if let Some(io) = p.io_priority() {
        let value = ioprio_value(io.class(), io.priority())?;
        // SAFETY: ioprio_set takes three integers.
        if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) } < 0 {
            return Err(errno("ioprio_set (process.ioPriority)"));
        }
    }
    if let Some(s) = p.scheduler() {
        let attr = sched_attr(s)?;
        // SAFETY: `attr` is a valid sched_attr of the size it declares, alive for the call.
        if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } < 0 {
            return Err(errno("sched_setattr (process.scheduler)"));
        }
    }
    Ok(())
}

/// Set the execution domain of the init.
pub fn apply_personality(p: &LinuxPersonality) -> Result<(), InitError> {
    let persona = persona(p)?;
    // SAFETY: personality takes one integer.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(errno("personality (linux.personality)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(json: serde_json::Value) -> Scheduler {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn ioprio_packs_class_and_level() {
        assert_eq!(
            ioprio_value(IOPriorityClass::IoprioClassBe, 4).unwrap(),
            (2 << 13) | 4
        );
        assert_eq!(
            ioprio_value(IOPriorityClass::IoprioClassIdle, 0).unwrap(),
            3 << 13
        );
        let err = ioprio_value(IOPriorityClass::IoprioClassRt, 8).unwrap_err();
        assert!(err.to_string().contains("process.ioPriority.priority"));
    }

    #[test]
    fn scheduler_maps_policy_flags_and_params() {
        let attr = sched_attr(&scheduler(serde_json::json!({
            "policy": "SCHED_BATCH", "nice": 5,
            "flags": ["SCHED_RESET_ON_FORK", "SCHED_FLAG_KEEP_PARAMS"]
        })))
        .unwrap();
        assert_eq!(attr.policy, 3);
        assert_eq!(attr.nice, 5);
        assert_eq!(attr.flags, 0x11);
        assert_eq!(attr.size, 56);
    }

    #[test]
    fn iso_and_negative_priority_are_named() {
        let iso = sched_attr(&scheduler(serde_json::json!({"policy": "SCHED_ISO"})));
        assert!(iso.unwrap_err().to_string().contains("SCHED_ISO"));
        let neg = sched_attr(&scheduler(
            serde_json::json!({"policy": "SCHED_FIFO", "priority": -1}),
        ));
        assert!(neg
            .unwrap_err()
            .to_string()
            .contains("process.scheduler.priority"));
    }

    #[test]
    fn personality_domains() {
        let p: LinuxPersonality =
            serde_json::from_value(serde_json::json!({"domain": "LINUX32"})).unwrap();
        assert_eq!(persona(&p).unwrap(), PER_LINUX32);
        let f: LinuxPersonality =
            serde_json::from_value(serde_json::json!({"domain": "LINUX", "flags": ["x"]})).unwrap();
        assert!(persona(&f).is_err());
    }
}
