"""Ordinary testinfra tests run by restore-drill against the restored web VM."""


def test_index_page_is_owned_by_root(host):
    index = host.file("/var/www/html/index.html")
    assert index.user == "root"
    assert index.mode == 0o644


def test_ssh_root_login_is_key_only(host):
    sshd = host.run("sshd -T").stdout
    assert "passwordauthentication no" in sshd or "permitrootlogin without-password" in sshd
