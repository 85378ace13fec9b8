// The header comes from the installed library (mlxrun.pc's Cflags: -IPREFIX/include), so
// the binding always compiles against the header of the library it links.
#include <mlxrun.h>
