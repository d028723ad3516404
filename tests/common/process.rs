//! Node processes for cluster tests: the test binary run again, with one test (a
//! `node_process` function of the binary's own) selected and its settings in the
//! environment. Killed when dropped.

use std::process::{Child, Command, Stdio};

/// A node process, killed (SIGKILL) when dropped.
pub struct NodeProcess(Child);

impl NodeProcess {
    /// Runs the test `test` of this binary in a new process with `env` set. Its
    /// output is discarded unless `KAIROS_TEST_NODE_OUTPUT` is set.
    pub fn spawn(test: &str, env: &[(&str, String)]) -> NodeProcess {
        let show = std::env::var_os("KAIROS_TEST_NODE_OUTPUT").is_some();
        let out = || {
            if show {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .stdout(out())
            .stderr(out());
        for (k, v) in env {
            cmd.env(k, v);
        }
        NodeProcess(cmd.spawn().expect("start a node process"))
    }

    /// SIGKILL: no shutdown, no release, no last heartbeat.
    pub fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
