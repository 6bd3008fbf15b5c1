#pragma once
// The `deltasync` operator and producer command line, as a library function so
// tests can run it in-process. Exit codes: 0 success, 1 failure at run time
// (hub unreachable, batch rejected), 2 usage or input error.

namespace ds {

int run_cli(int argc, char** argv);

}  // namespace ds
