#include "shared/service_notify.h"

#include <systemd/sd-daemon.h>

#include <cstring>

#include <spdlog/spdlog.h>

namespace ds {
namespace {

void send(std::string_view state, std::string_view status) {
  const std::string message = service_notify_message(state, status);
  if (message.empty()) return;
  // 0 when $NOTIFY_SOCKET is unset (nothing to do), > 0 when sent.
  const int r = sd_notify(/*unset_environment=*/0, message.c_str());
  if (r < 0) spdlog::warn("service manager: cannot send '{}' to $NOTIFY_SOCKET: {}", message, std::strerror(-r));
}

}  // namespace

std::string service_notify_message(std::string_view state, std::string_view status) {
  std::string message(state);
  if (status.empty()) return message;
  if (!message.empty()) message += '\n';
  message += "STATUS=";
  for (char c : status) {
    const auto u = static_cast<unsigned char>(c);
    message += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return message;
}

void notify_ready(std::string_view status) { send("READY=1", status); }
void notify_status(std::string_view status) { send("", status); }
void notify_stopping(std::string_view status) { send("STOPPING=1", status); }

}  // namespace ds
