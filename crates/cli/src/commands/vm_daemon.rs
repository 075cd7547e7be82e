//! The daemon-backed VM verbs (virsh's way): create, start, shutdown, off, pause, resume,
//! console, exec, rm, ls, inspect, edit. `vm run` (foreground) lives in vm.rs with the VMM.

use std::process::ExitCode;

use corral_api::client::enc;
use corral_api::{
    Instance, InstanceKind, Method, ShutdownRequest, VmEdit, VmExecRequest, VmExecResponse, VmSpec,
};

use crate::cli::GlobalArgs;
use crate::commands::api_client::{parse_size, Api};
use crate::commands::inventory;
use crate::commands::vm::{
    VmCreateArgs, VmEditArgs, VmExecArgs, VmLsArgs, VmNameArgs, VmRmArgs, VmShutdownArgs,
};

fn abs(p: &std::path::Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn mib(s: &str) -> anyhow::Result<u64> {
    Ok(parse_size(s)? >> 20)
}

/// `vm create`.
pub fn create(a: VmCreateArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let spec = VmSpec {
        name: a.name,
        kernel: a.kernel.as_deref().map(abs),
        initrd: a.initrd.as_deref().map(abs),
        cmdline: a.cmdline,
        cpus: a.cpus,
        memory_mib: a.memory.as_deref().map(mib).transpose()?,
        disks: a
            .disks
            .iter()
            .map(|d| match d.strip_suffix(",ro") {
                Some(p) => format!("{},ro", abs(p.as_ref())),
                None => abs(d.as_ref()),
            })
            .collect(),
        net: a.net,
        instance_type: Some(a.instance_type),
    };
    let api = Api::connect(global)?;
    let inst: Instance = api.block_on(api.client.call(Method::POST, "/v1/vms", Some(&spec)))?;
    println!("{}", inst.name);
    Ok(ExitCode::SUCCESS)
}

fn post(global: &GlobalArgs, name: &str, verb: &str) -> anyhow::Result<ExitCode> {
    let api = Api::connect(global)?;
    let inst: Instance = api.block_on(api.client.call::<(), _>(
        Method::POST,
        &format!("/v1/vms/{}/{verb}", enc(name)),
        None,
    ))?;
    println!("{}", inst.name);
    Ok(ExitCode::SUCCESS)
}

/// `vm start`.
pub fn start(a: VmNameArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    post(global, &a.name, "start")
}

/// Ctrl-], virsh's detach key.
const DETACH: u8 = 0x1d;

/// `vm console`: the guest's serial console on this terminal until Ctrl-] (or the VM ends).
pub fn console(a: VmNameArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    use crate::commands::terminal::{self, Ended, RawMode};
    use std::os::fd::AsFd;
    let api = Api::connect(global)?;
    let ended = api.block_on(async {
        let stream = api
            .client
            .upgrade(&format!("/v1/vms/{}/console", enc(&a.name)))
            .await?;
        eprintln!("Connected to VM {} (escape character is ^])", a.name);
        let raw = if terminal::is_tty(std::io::stdin().as_fd()) {
            Some(RawMode::enter()?)
        } else {
            None
        };
        let detach = terminal::DetachKeys::from_bytes(vec![DETACH]);
        let ended = terminal::run(stream, true, Some(detach), |_| async {}).await;
        drop(raw);
        ended
    })?;
    match ended {
        Ended::Detached => eprintln!("\nDetached from VM {}", a.name),
        Ended::Closed => eprintln!("\nThe console of VM {} closed (the VM ended)", a.name),
    }
    Ok(ExitCode::SUCCESS)
}

/// `vm off`.
pub fn off(a: VmNameArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    post(global, &a.name, "off")
}

/// `vm pause`.
pub fn pause(a: VmNameArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    post(global, &a.name, "pause")
}

/// `vm resume`.
pub fn resume(a: VmNameArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    post(global, &a.name, "resume")
}

/// `vm shutdown`.
pub fn shutdown(a: VmShutdownArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let api = Api::connect(global)?;
    let body = ShutdownRequest {
        timeout_secs: Some(a.timeout),
    };
    let inst: Instance = api.block_on(api.client.call(
        Method::POST,
        &format!("/v1/vms/{}/shutdown", enc(&a.name)),
        Some(&body),
    ))?;
    println!("{}", inst.name);
    Ok(ExitCode::SUCCESS)
}

/// `vm exec`: the command's output on ours, its status as ours (128+N for signal N, 127 when
/// it could not start).
pub fn exec(a: VmExecArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let api = Api::connect(global)?;
    let body = VmExecRequest {
        cmd: a.cmd,
        timeout_secs: Some(a.timeout),
    };
    let r: VmExecResponse = api.block_on(api.client.call(
        Method::POST,
        &format!("/v1/vms/{}/exec", enc(&a.name)),
        Some(&body),
    ))?;
    std::io::stdout().write_all(r.stdout.as_bytes())?;
    std::io::stderr().write_all(r.stderr.as_bytes())?;
    if r.truncated {
        eprintln!("corral: output beyond 1 MiB per stream was dropped");
    }
    let status = match (r.exit_code, r.signal, r.error) {
        (Some(c), _, _) => c,
        (None, Some(s), _) => {
            eprintln!("corral: the command was killed by signal {s}");
            128 + s
        }
        (None, None, e) => {
            eprintln!(
                "corral: {}",
                e.unwrap_or_else(|| "the command did not run".into())
            );
            127
        }
    };
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}

/// `vm rm`.
pub fn rm(a: VmRmArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let api = Api::connect(global)?;
    let mut failed = false;
    for n in &a.names {
        let r = api.block_on(api.client.text(
            Method::DELETE,
            &format!("/v1/vms/{}?force={}", enc(n), a.force),
            None,
        ));
        match r {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("corral: error: {n}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `vm ls`.
pub fn ls(a: VmLsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let api = Api::connect(global)?;
    inventory::show(&api, Some(InstanceKind::Vm), true, &a.format, a.watch)
}

/// `vm inspect`.
pub fn inspect(a: VmNameArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let api = Api::connect(global)?;
    let inst: Instance = api.block_on(api.client.call::<(), _>(
        Method::GET,
        &format!("/v1/vms/{}", enc(&a.name)),
        None,
    ))?;
    println!("{}", serde_json::to_string_pretty(&inst)?);
    Ok(ExitCode::SUCCESS)
}

/// `vm edit`.
pub fn edit(a: VmEditArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let body = VmEdit {
        cpus: a.cpus,
        memory_mib: a.memory.as_deref().map(mib).transpose()?,
        cmdline: a.cmdline,
    };
    let api = Api::connect(global)?;
    let inst: Instance = api.block_on(api.client.call(
        Method::PATCH,
        &format!("/v1/vms/{}", enc(&a.name)),
        Some(&body),
    ))?;
    println!("{}", inst.name);
    Ok(ExitCode::SUCCESS)
}
