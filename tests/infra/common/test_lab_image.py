"""The lab's base image already holds every Debian package the roles install (tests/lab/lib/image.sh).

A converge that downloads and unpacks packages on eight hosts through the proxy costs minutes of
every fresh lab; a role that starts installing a package the image lacks shows here.
"""
testinfra_hosts = ["ansible://all"]


def test_the_converge_installed_no_package(host):
    """apt's history on the host is empty: the roles found each of their packages in the image."""
    history = host.file("/var/log/apt/history.log")
    installs = [line for line in history.content_string.splitlines()
                if line.startswith(("Install:", "Upgrade:"))] if history.exists else []
    assert not installs, installs
