// deltasync: operator and producer command line; the logic lives in tools/cli.cc.
#include "tools/cli.h"

int main(int argc, char** argv) { return ds::run_cli(argc, argv); }
