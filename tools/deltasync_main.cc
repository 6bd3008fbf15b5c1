// deltasync: operator and producer command line.
#include <CLI/CLI.hpp>

#include "shared/version.h"

int main(int argc, char** argv) {
  CLI::App app{"deltasync: operator and producer command line (push data, inspect types,\n"
               "records and agents, verify convergence, generate credentials)."};
  app.set_version_flag("--version", std::string("deltasync ") + ds::kVersion);
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
