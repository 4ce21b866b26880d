"""The webhook's certificates, one room: `pki` builds, issues and reads keys and
certificates; `store` writes a directory of them as one set, under a lock, and
makes it whole after a crash; `rotation` renews and rotates the CA without
breaking the caBundle; `layout` names each file and the Secret once.
"""
