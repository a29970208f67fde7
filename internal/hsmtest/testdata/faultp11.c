/*
 * faultp11: a PKCS#11 module for tests. It forwards every call to a real
 * module (the path in TIER0_FAULTP11_MODULE, e.g. a copy of SoftHSM2) and
 * simulates a device that goes away and comes back, which SoftHSM2 cannot:
 *
 *   - while the file named by TIER0_FAULTP11_CONTROL exists, every wrapped
 *     call fails with CKR_DEVICE_REMOVED, or CKR_GENERAL_ERROR if the file
 *     contains "general"; when the fault starts, all sessions of the real
 *     module are closed (and with them the login and session objects), as
 *     a real removal or HSM restart does;
 *   - if the file contains "sticky", the module keeps failing with
 *     CKR_GENERAL_ERROR after the file is gone until it is re-initialised
 *     (C_Finalize, C_Initialize), as tpm2-pkcs11 does after its TPM broker
 *     restarts.
 *
 * C_Initialize, C_Finalize, C_GetInfo and C_GetFunctionList always work.
 * Built by internal/hsmtest (gcc) with the OASIS headers that
 * github.com/miekg/pkcs11 ships.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CK_PTR *
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif
#include "pkcs11.h"

static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST wrapped;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int faulted; /* the control file existed at the last check */
static int stuck;   /* failing until C_Finalize */

/* drop_sessions closes every session of the real module, slot by slot. */
static void drop_sessions(void) {
	CK_ULONG n = 0;
	if (real->C_GetSlotList(CK_FALSE, NULL_PTR, &n) != CKR_OK || n == 0)
		return;
	CK_SLOT_ID *slots = calloc(n, sizeof *slots);
	if (slots == NULL)
		return;
	if (real->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK)
		for (CK_ULONG i = 0; i < n; i++)
			real->C_CloseAllSessions(slots[i]);
	free(slots);
}

/* check returns the error the current call fails with, or CKR_OK. */
static CK_RV check(void) {
	const char *path = getenv("TIER0_FAULTP11_CONTROL");
	struct stat st;
	if (path == NULL || stat(path, &st) != 0) {
		pthread_mutex_lock(&mu);
		faulted = 0;
		int s = stuck;
		pthread_mutex_unlock(&mu);
		return s ? CKR_GENERAL_ERROR : CKR_OK;
	}
	char buf[64] = {0};
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		size_t r = fread(buf, 1, sizeof buf - 1, f);
		buf[r] = 0;
		fclose(f);
	}
	CK_RV code = strstr(buf, "general") != NULL ? CKR_GENERAL_ERROR : CKR_DEVICE_REMOVED;
	pthread_mutex_lock(&mu);
	int was = faulted;
	faulted = 1;
	if (strstr(buf, "sticky") != NULL)
		stuck = 1;
	pthread_mutex_unlock(&mu);
	if (!was)
		drop_sessions();
	return code;
}

static CK_RV w_C_Finalize(CK_VOID_PTR p) {
	pthread_mutex_lock(&mu);
	stuck = 0;
	pthread_mutex_unlock(&mu);
	return real->C_Finalize(p);
}

#define WRAP(name, params, args)                  \
	static CK_RV w_##name params {            \
		CK_RV rv = check();               \
		if (rv != CKR_OK)                 \
			return rv;                \
		return real->name args;           \
	}

WRAP(C_GetSlotList, (CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n), (p, l, n))
WRAP(C_GetSlotInfo, (CK_SLOT_ID s, CK_SLOT_INFO_PTR i), (s, i))
WRAP(C_GetTokenInfo, (CK_SLOT_ID s, CK_TOKEN_INFO_PTR i), (s, i))
WRAP(C_OpenSession, (CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY n, CK_SESSION_HANDLE_PTR h), (s, f, a, n, h))
WRAP(C_CloseSession, (CK_SESSION_HANDLE h), (h))
WRAP(C_CloseAllSessions, (CK_SLOT_ID s), (s))
WRAP(C_GetSessionInfo, (CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR i), (h, i))
WRAP(C_Login, (CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG n), (h, u, p, n))
WRAP(C_Logout, (CK_SESSION_HANDLE h), (h))
WRAP(C_CopyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR r), (h, o, t, n, r))
WRAP(C_DestroyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o), (h, o))
WRAP(C_GetAttributeValue, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, o, t, n))
WRAP(C_FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, t, n))
WRAP(C_FindObjects, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n), (h, o, m, n))
WRAP(C_FindObjectsFinal, (CK_SESSION_HANDLE h), (h))
WRAP(C_SignInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
WRAP(C_Sign, (CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR s, CK_ULONG_PTR sn), (h, d, n, s, sn))

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
	if (list == NULL_PTR)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (real == NULL) {
		const char *path = getenv("TIER0_FAULTP11_MODULE");
		void *lib = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
		CK_C_GetFunctionList get = lib != NULL ? (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList") : NULL;
		CK_FUNCTION_LIST_PTR r = NULL;
		if (get == NULL || get(&r) != CKR_OK || r == NULL) {
			pthread_mutex_unlock(&mu);
			return CKR_GENERAL_ERROR;
		}
		real = r;
		wrapped = *r;
		wrapped.C_Finalize = w_C_Finalize;
		wrapped.C_GetSlotList = w_C_GetSlotList;
		wrapped.C_GetSlotInfo = w_C_GetSlotInfo;
		wrapped.C_GetTokenInfo = w_C_GetTokenInfo;
		wrapped.C_OpenSession = w_C_OpenSession;
		wrapped.C_CloseSession = w_C_CloseSession;
		wrapped.C_CloseAllSessions = w_C_CloseAllSessions;
		wrapped.C_GetSessionInfo = w_C_GetSessionInfo;
		wrapped.C_Login = w_C_Login;
		wrapped.C_Logout = w_C_Logout;
		wrapped.C_CopyObject = w_C_CopyObject;
		wrapped.C_DestroyObject = w_C_DestroyObject;
		wrapped.C_GetAttributeValue = w_C_GetAttributeValue;
		wrapped.C_FindObjectsInit = w_C_FindObjectsInit;
		wrapped.C_FindObjects = w_C_FindObjects;
		wrapped.C_FindObjectsFinal = w_C_FindObjectsFinal;
		wrapped.C_SignInit = w_C_SignInit;
		wrapped.C_Sign = w_C_Sign;
	}
	pthread_mutex_unlock(&mu);
	*list = &wrapped;
	return CKR_OK;
}
