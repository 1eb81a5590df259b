"""HeTu's error tree: one root and a shallow set of typed errors.

HeTu 的错误类型：一个根类与少量子类。
"""


class HeTuError(Exception):
    """Root of every error HeTu raises on purpose. HeTu 所有主动抛出错误的基类。"""


class ConfigError(HeTuError):
    """Bad configuration, app definition or command-line input. Not retryable: fix
    the input named in the message.

    配置、应用定义或命令行输入有误。不可重试：请按消息修正。
    """


class ProtocolError(HeTuError):
    """A peer sent bytes that break the wire protocol. Not retryable on the same
    connection.

    对端发送了违反协议的数据。同一连接上不可重试。
    """


class RaceCondition(HeTuError):
    """A transaction read or wrote data another transaction changed first. Raised by
    commit; Systems are re-run automatically (``retry``). Retryable.

    事务读取或写入的数据被其他事务先修改。由提交抛出；System 会自动重跑。可重试。
    """


class UniqueViolation(HeTuError):
    """An insert or update would duplicate a value of a unique field. Raised by
    insert/update/commit. Not retryable: the client gets ``unique_violation``.

    插入或更新会造成唯一字段重复。不可重试：客户端收到 ``unique_violation``。
    """


class ClientReject(HeTuError):
    """Raised by app code (usually a guard) to refuse a call softly: the client gets
    code ``rejected`` with ``code`` in the message; ``reason`` stays in the server log.
    Not retried.

    由应用代码（通常是 guard）抛出以温和地拒绝调用：客户端收到 ``rejected``
    及 ``code``；``reason`` 只写入服务器日志。不重试。
    """

    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(f"{code}: {reason}" if reason else code)
        self.code = code
        self.reason = reason
