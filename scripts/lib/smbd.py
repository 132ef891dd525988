# A throwaway smbd for the VM's Samba checks (scripts/lib/smbtorture.py,
# scripts/lib/bench-samba.py): Debian's smbd, standalone, on loopback, every
# state directory under STATE (the guest's root file system is read-only),
# one share `t`. Imported, not run.
import os, shutil, signal, socket, subprocess, time

SMBD = "/usr/sbin/smbd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Smbd:
    """smbd serving SHARE as `t`; `stable` runs it under `stable-splice exec`
    (SS_TOOL); `extra` are more [global] lines, `share_extra` more lines of
    the share. Clients pass `-s self.conf` so that their state lands in
    STATE too."""

    def __init__(self, state, share, stable=False, extra="", share_extra=""):
        shutil.rmtree(state, ignore_errors=True)
        for d in ["private", "lock", "state", "cache", "ncalrpc"]:
            os.makedirs(f"{state}/{d}")
        self.state, self.port, self.conf = state, free_port(), f"{state}/smb.conf"
        with open(self.conf, "w") as f:
            f.write(f"""[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {self.port}
  private dir = {state}/private
  lock directory = {state}/lock
  state directory = {state}/state
  cache directory = {state}/cache
  pid directory = {state}
  ncalrpc dir = {state}/ncalrpc
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
  log level = 1
{extra}[t]
  path = {share}
  read only = no
{share_extra}""")
        cmd = [SMBD, "--foreground", "--no-process-group", "--debug-stdout", "-s", self.conf]
        if stable:
            cmd = [os.environ["SS_TOOL"], "exec", "--"] + cmd
        self.log = f"{state}/smbd.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smbd exited with {self.proc.returncode}: {open(self.log).read()[-800:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("smbd did not come up on port %d" % self.port)

    def client(self, *args):
        """smbclient arguments for this server (then the caller's)."""
        return ["smbclient", "//127.0.0.1/t", "-s", self.conf, "-p", str(self.port)] + list(args)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
