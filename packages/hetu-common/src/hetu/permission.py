"""Read/subscribe and call permissions of components, systems and endpoints.

组件、System 与 Endpoint 的读取/订阅及调用权限。
"""

from enum import IntEnum


class Permission(IntEnum):
    """Who may read a component's rows or call a System.

    - ``EVERYBODY``: anyone, logged in or not.
    - ``USER``: logged-in callers (``ctx.caller != 0``).
    - ``OWNER``: rows whose ``owner`` field equals the caller (components only).
    - ``RLS``: rows where ``rls_compare=(op, row_field, ctx_attr)`` holds (components
      only).
    - ``ADMIN``: admin connections only (``ctx.group`` starts with ``"admin"``).

    谁可以读取组件的行或调用 System：所有人、已登录用户、行的 ``owner`` 等于调用者、
    满足 ``rls_compare`` 的行、仅管理员连接。
    """

    EVERYBODY = 1
    USER = 2
    OWNER = 3
    RLS = 4
    ADMIN = 5
